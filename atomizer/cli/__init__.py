"""Command-line interface (click). ``atomizer --help`` lists the jobs."""
