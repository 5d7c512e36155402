"""The Typer command-line interface. Thin: parse, call one library function, render."""
