"""operando.kinetics"""
