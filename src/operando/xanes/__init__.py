"""operando.xanes"""
