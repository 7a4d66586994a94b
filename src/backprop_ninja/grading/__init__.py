"""Grading one student's submission: what runs the student's code, and how it is confined."""
