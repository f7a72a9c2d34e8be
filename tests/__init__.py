"""The test suite: one folder per subpackage of cellsearch, shared helpers in tests.support."""
