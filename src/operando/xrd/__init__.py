"""operando.xrd"""
