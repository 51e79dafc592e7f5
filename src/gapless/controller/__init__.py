"""The control plane's reconcile loop: observe, plan (pure), apply, persist."""
