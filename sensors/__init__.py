"""Built-in sensor specs (YAML). Installed as the package data ``atomizer.builtin_sensors``."""
