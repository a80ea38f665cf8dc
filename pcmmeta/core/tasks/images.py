"""`images`: N-way K-shot image classification (Omniglot layout, or the built-in SYNTHETIC glyphs).

A task draws N classes, K support and Q query drawings per class, and gives the classes the
labels 0 … N−1 in a random order (labels are permuted per task, so the network cannot memorise
a class → label map). With `rotations`, every class rotated by 90°, 180° and 270° is a class of
its own (the standard Omniglot augmentation), applied when a task is drawn.

Data (`task.data`): a folder in the Omniglot layout `ROOT/<alphabet>/<character>/*.png`, e.g.
Omniglot's `images_background`, with `task.eval_data` (e.g. `images_evaluation`) for the test
classes; or one folder split into training and test classes by `split_seed`. A share of the
training classes (`validation_fraction`, by `split_seed`) is carved out as validation classes:
hyperparameters are chosen on them, never on the test classes. Without
`data`, the built-in procedural glyphs (`pcmmeta.io.imagedata.glyphs`: SYNTHETIC, not Omniglot).
pcmmeta never downloads anything. Images are stored as uint8 (strokes 255) and become floats
in [0, 1] in `encode`.

Loss: cross-entropy of the head's logits; metric: accuracy.
"""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, Float, Int, PRNGKeyArray, UInt8

from pcmmeta.core.fields import Field, hyperparameter
from pcmmeta.core.tasks.base import AbstractTaskFamily, TaskBatch
from pcmmeta.core.tasks.figures import FewShotFigure
from pcmmeta.errors import UserInputError


@dataclasses.dataclass(frozen=True)
class ImageSplits:
    """A task family's images, (classes, drawings, 28, 28) in [0, 1] per split, and where they
    came from (read by `pcmmeta.io.task_data`)."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    source: str


def _rotate(image: Array, quarter_turns: Int[Array, ""]) -> Array:
    """image (…, H, W) rotated counter-clockwise by quarter_turns × 90° (as np.rot90)."""
    return jax.lax.switch(
        quarter_turns, [lambda a: a] + [lambda a, k=k: jnp.rot90(a, k, axes=(-2, -1)) for k in (1, 2, 3)], image
    )


class FewShotImages(AbstractTaskFamily):
    SCHEMA = {
        "data": Field(
            None, "path", "folder in the Omniglot layout (training classes); none: the built-in SYNTHETIC glyphs"
        ),
        "eval_data": Field(
            None, "path", "folder of held-out classes (e.g. images_evaluation); none: split `data` by split_seed"
        ),
        "train_fraction": Field(
            0.7, "float", "classes used for training when one folder (or the glyphs) is split", low=0.05, high=0.95
        ),
        "split_seed": Field(0, "seed", "seed of the training / test and training / validation class splits"),
        "validation_fraction": Field(
            0.15,
            "float",
            "share of the training classes carved out as validation classes (hyperparameters are chosen on them)",
            low=0.05,
            high=0.5,
        ),
        "glyph_classes": Field(1623, "int", "built-in glyphs: number of classes (Omniglot has 1623)", low=4),
        "glyph_drawings": Field(20, "int", "built-in glyphs: drawings per class (Omniglot has 20)", low=2),
        "glyph_seed": Field(0, "seed", "built-in glyphs: generator seed"),
        "glyph_jitter": Field(
            1.0,
            "float",
            "built-in glyphs: per-drawing jitter (raise it if the pixel baseline is too easy)",
            positive=True,
        ),
    }
    name = "images"
    inputs = "images"
    metric = "accuracy"
    higher_is_better = True

    #: The size of a task, where the data come from, then the augmentation and the glyphs.
    KEY_ORDER = (
        "ways",
        "shots",
        "queries",
        "data",
        "eval_data",
        "train_fraction",
        "split_seed",
        "validation_fraction",
        "rotations",
    )

    train_images: UInt8[Array, "classes drawings 28 28"]
    validation_images: UInt8[Array, "classes drawings 28 28"]
    test_images: UInt8[Array, "classes drawings 28 28"]
    ways: int = hyperparameter(5, "int", "N: classes per task", low=2)
    shots: int = hyperparameter(5, "int", "K: support drawings per class", low=1)
    queries: int = hyperparameter(15, "int", "query drawings per class", low=1)
    rotations: bool = hyperparameter(
        True, "bool", "90° rotations as extra classes (the standard Omniglot augmentation)"
    )
    which: str = eqx.field(static=True, default="train")  # the split whose classes `sample` draws
    source: str = eqx.field(static=True, default="")

    @classmethod
    def from_recipe(cls, section, data: "ImageSplits | None" = None):
        if data is None:
            raise ValueError("the images family is built from its data: pcmmeta.io.task_data.load_task_data")
        return cls._checked(section, section["shots"] + section["queries"], data)

    @classmethod
    def _checked(cls, section, need, data: "ImageSplits"):
        name = section["data"] or "glyphs"
        for part, label in (
            (data.train, name),
            (data.validation, f"{name} (validation classes)"),
            (data.test, section["eval_data"] or name),
        ):
            n_classes = part.shape[0] * (4 if section["rotations"] else 1)
            if n_classes < section["ways"]:
                raise UserInputError(
                    f"'task.ways' = {section['ways']}: {label} has {n_classes} classes in a split, "
                    f"a {section['ways']}-way task needs at least {section['ways']}; reduce task.ways"
                )
            if part.shape[1] < need:
                raise UserInputError(
                    f"'task.shots' + 'task.queries' = {need}: {label} has {part.shape[1]} drawings per class, "
                    "a task needs that many of each of its classes; reduce task.shots or task.queries"
                )
        return cls(
            train_images=jnp.asarray(np.round(data.train * 255).astype(np.uint8)),
            validation_images=jnp.asarray(np.round(data.validation * 255).astype(np.uint8)),
            test_images=jnp.asarray(np.round(data.test * 255).astype(np.uint8)),
            ways=section["ways"],
            shots=section["shots"],
            queries=section["queries"],
            rotations=section["rotations"],
            source=data.source,
        )

    @property
    def images(self) -> Array:
        return {"train": self.train_images, "validation": self.validation_images, "test": self.test_images}[self.which]

    @property
    def n_classes(self) -> int:
        return self.images.shape[0] * (4 if self.rotations else 1)

    def split(self, name: str) -> "FewShotImages":
        super().split(name)  # a known split
        return dataclasses.replace(self, which=name)

    def with_shots(self, shots: int) -> "FewShotImages":
        if shots + self.queries > self.images.shape[1]:
            raise UserInputError(
                f"--shots {shots}: the data has {self.images.shape[1]} drawings per class, {shots} + {self.queries} queries do not fit"
            )
        return dataclasses.replace(self, shots=shots)

    def sample(self, key: PRNGKeyArray, n_tasks: int) -> TaskBatch:
        images = self.images
        base_classes, drawings = images.shape[0], images.shape[1]
        n, k, q = self.ways, self.shots, self.queries

        def one_task(key):
            k_class, k_draw, k_label = jax.random.split(key, 3)
            classes = jax.random.choice(k_class, self.n_classes, (n,), replace=False)
            picks = jax.vmap(lambda kk: jax.random.permutation(kk, drawings)[: k + q])(jax.random.split(k_draw, n))
            x = images[(classes % base_classes)[:, None], picks]  # (n, k + q, 28, 28)
            x = jax.vmap(_rotate)(x, classes // base_classes)
            labels = jax.random.permutation(k_label, n)  # class i of the task gets label labels[i]
            y = jnp.broadcast_to(labels[:, None], (n, k + q))
            support = (x[:, :k].reshape(n * k, *x.shape[2:]), y[:, :k].reshape(n * k))
            query = (x[:, k:].reshape(n * q, *x.shape[2:]), y[:, k:].reshape(n * q))
            return support, query, classes

        (xs, ys), (xq, yq), classes = jax.vmap(one_task)(jax.random.split(key, n_tasks))
        return TaskBatch(xs, ys, xq, yq, classes)

    def encode(self, x: UInt8[Array, "... 28 28"]) -> Float[Array, "... 28 28 1"]:
        return (x.astype(jnp.float32) / 255.0)[..., None]

    @property
    def n_outputs(self) -> int:
        return self.ways

    def loss(self, prediction: Float[Array, "samples ways"], y: Int[Array, " samples"]) -> Float[Array, ""]:
        return optax.softmax_cross_entropy_with_integer_labels(prediction, y).mean()

    def metrics(self, prediction, y):
        return {"accuracy": jnp.mean(jnp.argmax(prediction, -1) == y)}

    def baselines(self, tasks: TaskBatch) -> dict[str, float]:
        """Chance, and raw-pixel 1-nearest-neighbour over the support set on the same tasks."""
        xs = np.asarray(tasks.x_support, np.float32).reshape(tasks.n_tasks, tasks.x_support.shape[1], -1)
        xq = np.asarray(tasks.x_query, np.float32).reshape(tasks.n_tasks, tasks.x_query.shape[1], -1)
        d = (xq**2).sum(-1)[:, :, None] - 2 * np.einsum("tqp,tsp->tqs", xq, xs) + (xs**2).sum(-1)[:, None, :]
        nearest = np.take_along_axis(np.asarray(tasks.y_support), d.argmin(-1), axis=1)
        return {"chance": 1.0 / self.ways, "pixel_nn_accuracy": float(np.mean(nearest == np.asarray(tasks.y_query)))}

    def task_from_support(self, data: np.ndarray, where: str) -> TaskBatch:
        """A folder of N class folders (labels in sorted order), K or more images each: `data`
        (classes, drawings, 28, 28) in [0, 1]."""
        if data.shape[0] != self.ways:
            raise UserInputError(
                f"{where}: {data.shape[0]} class folders, this network classifies {self.ways} (one folder per class)"
            )
        x = np.round(data * 255).astype(np.uint8)  # (ways, m, 28, 28)
        m = x.shape[1]
        y = np.repeat(np.arange(self.ways), m)
        xs = jnp.asarray(x.reshape(self.ways * m, *x.shape[2:]))[None]
        ys = jnp.asarray(y, jnp.int32)[None]
        return TaskBatch(xs, ys, xs, ys, jnp.full((1, self.ways), -1))

    def data_description(self) -> str:
        return (
            f"{self.source}: {self.train_images.shape[0]} training, {self.validation_images.shape[0]} validation and {self.test_images.shape[0]} test classes"
            + (" (×4 with rotations)" if self.rotations else "")
        )

    def shots_of(self, tasks: TaskBatch) -> int:
        return int(tasks.y_support.shape[1]) // self.ways

    def describe(self, tasks: TaskBatch, i: int) -> dict:
        return {"classes": [int(c) for c in np.asarray(tasks.params[i])]}

    def breakdown(self, prediction, y) -> dict:
        predicted = np.asarray(prediction).argmax(-1)
        y = np.asarray(y)
        return {
            f"label {c} accuracy": float(np.mean(predicted[y == c] == c)) for c in range(self.ways) if np.any(y == c)
        }

    def plot_inputs(self, tasks: TaskBatch) -> Array:
        return tasks.x_query

    def figure(self, tasks: TaskBatch, outputs) -> FewShotFigure:
        return FewShotFigure(
            np.asarray(tasks.x_support[0]),
            np.asarray(tasks.y_support[0]),
            np.asarray(tasks.x_query[0]),
            np.asarray(tasks.y_query[0]),
            np.asarray(outputs[0]),
            self.source,
        )
