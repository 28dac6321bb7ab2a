"""operando.simulate"""
