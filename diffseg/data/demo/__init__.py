"""The demo world: procedural street scenes in the 19-class space, rendered, never downloaded.

canvas (depth-ordered drawing) -> scene (layout and labels) -> style (appearance: source,
night, fog, ...) -> dataset (the `demo` dataset's splits) and pretrain (the unlabelled images
the built-in `mini` model is pre-trained on, disjoint from every split).
"""
