"""Fleet updates: signed commands, jobs, artifacts (never imports agent.vision)."""
