"""The command line: the parser, the dispatch, the single-tool commands and the invoke tasks."""
