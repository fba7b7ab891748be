"""Class activation maps in one place.

* :mod:`~momentlens.cam.maps`: the maps of a clip tensor (CAM, Grad-CAM, class evidence
  over time, upsampling on the receptive-field grid);
* :mod:`~momentlens.cam.video`: the maps of a video file, through the dataset's
  evaluation view, back on the source pixel grid, over time with sliding windows;
* :mod:`~momentlens.cam.localize`: how well maps localise (pointing game, IoU,
  ``boxes.json``), over one video or a dataset split;
* :mod:`~momentlens.cam.render`: pictures (overlays, GIF frames, contact sheet, evidence
  plot and CSV); :mod:`~momentlens.cam.gallery`: the report's gallery.

Nothing here loads a training run or writes a command's files: that is
:mod:`momentlens.commands.cam`.
"""
