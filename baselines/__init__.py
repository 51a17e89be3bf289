"""In-repo models and recipes (retrieval baseline; FIRES and COMPEER to come)."""
