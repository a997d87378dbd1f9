"""Cell types and the differential count: name every detected cell, count the smear as a hematologist does.

labels.py       cell labels from class folders, a CSV or `mil synth` truth, as one table
join.py         that table placed on a store's bags (by instance, file or position)
vocabulary.py   analyser names mapped onto one standard set (configs/celltypes/*.yaml), roles, colours
dataset.py      the labelled cells of a store, and an account of everything left out
classifiers/    linear probe, MLP, kNN on frozen embeddings (one registry, one file each)
calibration.py  temperature scaling fitted on out-of-fold predictions
cv.py           patient-grouped cross-validation and its metrics
model.py        a trained cell model on disk (numbers, no pickle) and its encoder check
train.py        `mil cells train`
count.py        one slide's or patient's differential: counts, % with Clopper-Pearson intervals, measures
flags.py        reference ranges -> flags (not diagnoses)
differential.py `mil cells count`: a store counted per slide and patient, written as CSV + JSON
"""
