"""Notifications: tells visitors (SMS, e-mail) and mediators (inbox) how their cases move."""
