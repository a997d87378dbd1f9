"""The smear as an image: region QC, nucleated-cell detection and segmentation, stain optics, crops."""
