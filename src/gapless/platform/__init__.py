"""gapless.platform"""
