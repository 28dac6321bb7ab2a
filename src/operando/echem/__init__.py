"""operando.echem"""
