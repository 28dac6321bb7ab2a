"""operando.io"""
