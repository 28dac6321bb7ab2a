"""operando.report"""
