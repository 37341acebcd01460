"""Sales: leads as they arrive from marketing, cleaned, scored and routed to reps."""
