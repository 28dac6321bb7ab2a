"""operando.confocal"""
