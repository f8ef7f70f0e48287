"""The recipe's stages, one module each (the order they run in is `keras_bertopt.recipe.registry`).

Each module holds its config section (`SECTION`), ``run(ctx) -> dict`` and, when the
stage has rules across config sections, ``check(config)``.
"""
