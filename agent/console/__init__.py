"""Staff console (Textual; never imports agent.vision)."""
