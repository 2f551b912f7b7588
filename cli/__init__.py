"""The `arr` command line (installed as `arretrieve.cli`): parse, call the library, print."""
