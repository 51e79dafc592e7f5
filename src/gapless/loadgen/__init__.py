"""gapless.loadgen"""
