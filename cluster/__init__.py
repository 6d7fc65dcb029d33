"""`--cluster`: batches of shorts across machines on Ray (the `cluster` extra). Imported only under --cluster."""
