"""Files: run directories, serialisation, measurement CSVs, image folders, policy files, plots.
Imports the core and the runtime, never the experiment services or the CLI."""
