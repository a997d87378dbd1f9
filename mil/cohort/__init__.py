"""The cohort: patient-level labels read and checked, and the patient-level folds."""
