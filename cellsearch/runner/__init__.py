"""Running searches: trial evaluation, the controller and results, Ray Tune glue (lazy)."""
