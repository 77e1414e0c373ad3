"""Model layer: torch + diffusers only. Never imports gradio or ``storymaker.domain``."""
