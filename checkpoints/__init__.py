"""How weights are found: builtin sources shipped in the repo, local directories, Hub ids."""
