"""GraphQL partner API for medical appointments with fine-grained authorization."""
