"""Who is calling: API keys, authentication, and the partner's grants."""
