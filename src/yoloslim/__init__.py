"""yoloslim."""
