"""Protocol files (data): one folder per suite holding `suite.yaml` and one YAML file per setup."""
