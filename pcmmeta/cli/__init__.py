"""The command line: parse, call the experiment services, render, map errors to exit codes."""
