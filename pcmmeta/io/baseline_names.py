"""What each key of a task family's `baselines` is, in the metric's own units: one name for
the CLI's tables, the report page and the figures. Light (no JAX): the report imports it."""

BASELINE_NAMES = {
    "mse_zero": "zero predictor",
    "loss_zero": "an arm that does not move",
    "chance": "chance",
    "pixel_nn_accuracy": "raw-pixel nearest neighbour",
}
