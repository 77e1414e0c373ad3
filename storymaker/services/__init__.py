"""Services: the character registry, the render engine and its backends, export, project storage.

Each service has a plain-Python interface usable without Gradio (the CLI and the UI both use them);
``container.build_services`` wires them together for an app or a command.
"""
