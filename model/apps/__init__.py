"""What users run: the commands, classify, predict, serve, the published model, the API."""
