"""Reading a profile: YAML with positions, schema validation, semantic checks, typed model."""

from k8sseed.profile.load import load_profile, load_profile_text

__all__ = ["load_profile", "load_profile_text"]
