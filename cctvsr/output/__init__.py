"""What `enhance` writes: typed records (records.py), the face writer, the manifest, the report, the annotated video."""
