"""The owner's own page: sign in with a passkey, hear and delete your recordings (app.py)."""
