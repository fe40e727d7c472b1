"""Stylizing: one image (:class:`styler.inference.stylizer.Stylizer`), folders, tiles, video
frames, export and contact sheets."""
