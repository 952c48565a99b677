"""AlphaZero-style self-play learning on a pgx board game (Silver et al. 2017, 2018), fully inside the jitted step.

    config.task = dict(name="alphazero", game="tic_tac_toe", num_games=64, num_simulations=32, selfplay_every=8,
                       buffer_size=8192)
    config.model = dict(name="policy_value_net")        # (policy logits [B, A], value [B]); jaxdl.models.rl
    (config.task.batch_size = 128: positions per gradient step, drawn from the replay buffer)

Every `selfplay_every` steps the step plays `num_games` complete games against itself (`jaxdl.rl.games.search`:
mctx Gumbel MuZero with the real game as the model and the current network valuing the leaves; the move played is
the search's action), and writes each position with its search policy (`action_weights`) and the game's final
result from that position's mover into the replay buffer (a ring in the carry, checkpointed with the run). Each
step trains on `data.batch_size` positions drawn uniformly from the filled part of the buffer:
loss = cross-entropy(search policy, network policy) + (result - value)^2 (weight decay via config.optim).
Train metrics: policy_loss, value_loss, policy_accuracy (network argmax = search argmax), buffer_fill, games.
"""

import jax
import jax.numpy as jnp
from flax import nnx

from jaxdl.rl import games
from jaxdl.tasks.base import Task as BaseTask

BATCH_KEYS = ("obs", "policy", "result", "valid")


class Task(BaseTask):
    produces_batches = True
    batch_keys = BATCH_KEYS
    not_model_inputs = BATCH_KEYS

    def __init__(
        self,
        *,
        game: str = "tic_tac_toe",
        num_games: int = 64,
        num_simulations: int = 32,
        selfplay_every: int = 8,
        buffer_size: int = 8192,
        batch_size: int = 128,
        random_opening: int = 0,
    ):
        super().__init__()
        self.env = games.make(game)  # an unknown game fails here, naming it
        if game not in games.MAX_MOVES:
            raise ValueError(f"config.task.game={game!r}: supported games are {sorted(games.MAX_MOVES)}")
        for key, value in dict(num_games=num_games, num_simulations=num_simulations, selfplay_every=selfplay_every,
                               batch_size=batch_size).items():  # fmt: skip
            if value < 1:
                raise ValueError(f"config.task.{key}={value} must be >= 1")
        self.max_moves = games.MAX_MOVES[game]
        if buffer_size < num_games * self.max_moves:
            raise ValueError(
                f"config.task.buffer_size={buffer_size} must hold one self-play round: num_games * "
                f"{self.max_moves} = {num_games * self.max_moves}"
            )
        self.game, self.num_games, self.num_simulations = game, num_games, num_simulations
        self.selfplay_every, self.buffer_size, self.batch_size = selfplay_every, buffer_size, batch_size
        if not 0 <= random_opening < self.max_moves:
            raise ValueError(f"config.task.random_opening={random_opening} must be in [0, {self.max_moves})")
        self.random_opening = random_opening
        state = self.env.init(jax.random.key(0))
        self.obs_shape, self.num_actions = tuple(state.observation.shape), int(state.legal_action_mask.shape[0])

    def check_model_config(self, model_config) -> None:
        from jaxdl import models

        if not model_config.get("name"):
            raise ValueError("config.model.name is required (it is empty)")
        if not getattr(models.get_class(model_config["name"]), "POLICY_VALUE", False):
            raise ValueError(
                f"config.model.name={model_config['name']!r} is not a policy-value network (task 'alphazero' "
                "needs (policy logits, value) outputs, e.g. 'policy_value_net')"
            )
        models.check_kwargs(model_config["name"], {k: v for k, v in model_config.items() if k != "name"})

    def data_info(self, config) -> dict:
        return {"input_shape": self.obs_shape, "num_classes": self.num_actions}

    def default_evals(self) -> dict[str, dict]:
        return {"main": dict(kind="games")}

    # ------------------------------------------------------------------------------------------ carry
    def init_carry(self, key: jax.Array, model: nnx.Module) -> dict:
        n = self.buffer_size
        return {
            "obs": jnp.zeros((n, *self.obs_shape), jnp.bool_),
            "policy": jnp.zeros((n, self.num_actions), jnp.float32),
            "result": jnp.zeros((n,), jnp.float32),
            "valid": jnp.zeros((n,), jnp.bool_),
            "write": jnp.zeros((), jnp.int32),
            "t": jnp.zeros((), jnp.int32),
            "games": jnp.zeros((), jnp.int32),
        }

    def evaluator(self, model: nnx.Module):
        """evaluate(state, key) -> (prior logits, value) of the network, for `games.search`."""

        def evaluate(state, key):
            del key
            return model(state.observation)

        return evaluate

    def self_play(self, model: nnx.Module, key: jax.Array) -> dict:
        """`num_games` games of the network + search against itself: obs [M, G, ...], policy [M, G, A], result [M, G]
        (final result for each position's mover), valid [M, G] (the game was not over before that move, and the
        move was the search's: each game first plays 0..`random_opening` uniformly random moves, untrained on, so
        self-play also reaches the openings a fixed network would never choose)."""
        k_init, k_open, k_play = jax.random.split(key, 3)
        state = jax.vmap(self.env.init)(jax.random.split(k_init, self.num_games))
        opening = jax.random.randint(k_open, (self.num_games,), 0, self.random_opening + 1)
        evaluate = self.evaluator(model)

        def body(s, xs):
            t, k = xs
            k_search, k_random = jax.random.split(k)
            out = games.search(self.env, evaluate, s, k_search, self.num_simulations, gumbel=True)
            searched = t >= opening
            action = jnp.where(searched, out.action, games.random_policy(s, k_random))
            live, mover = ~(s.terminated | s.truncated), s.current_player
            nxt = jax.vmap(self.env.step)(s, action)
            nxt = jax.tree.map(lambda n, o: jnp.where(games._bcast(live, n), n, o), nxt, s)
            reward = jnp.take_along_axis(nxt.rewards, mover[:, None], 1)[:, 0]
            record = dict(obs=s.observation, policy=out.action_weights, reward=reward, live=live & searched)
            return nxt, record | {"over": nxt.terminated | nxt.truncated}

        _, rec = jax.lax.scan(body, state, (jnp.arange(self.max_moves), jax.random.split(k_play, self.max_moves)))

        def back(v_next, xs):  # result for the mover at t: its reward, else minus the next mover's result
            r, over = xs
            v = jnp.where(over, r, -v_next)
            return v, v

        _, result = jax.lax.scan(back, jnp.zeros((self.num_games,)), (rec["reward"], rec["over"]), reverse=True)
        return {"obs": rec["obs"], "policy": rec["policy"], "result": result, "valid": rec["live"]}

    def _push(self, carry: dict, played: dict) -> dict:
        n = self.max_moves * self.num_games
        idx = (carry["write"] + jnp.arange(n)) % self.buffer_size
        new = dict(carry)
        for k in BATCH_KEYS:
            new[k] = carry[k].at[idx].set(played[k].reshape(n, *played[k].shape[2:]).astype(carry[k].dtype))
        new["write"] = (carry["write"] + n) % self.buffer_size
        new["games"] = carry["games"] + self.num_games
        return new

    def make_batch(self, model: nnx.Module, carry: dict, key: jax.Array) -> tuple[dict, dict]:
        """`batch_size` buffer positions (a self-play round first, every `selfplay_every` steps)."""
        k_play, k_draw = jax.random.split(key)
        graphdef, state = nnx.split(model)
        carry = jax.lax.cond(
            carry["t"] % self.selfplay_every == 0,
            lambda c, s: self._push(c, self.self_play(nnx.merge(graphdef, s), k_play)),
            lambda c, s: c,
            carry,
            state,
        )
        # uniform over valid entries: Gumbel-max over the valid mask (no host sync, fixed shapes)
        logits = jnp.where(carry["valid"], 0.0, -jnp.inf)
        idx = jax.random.categorical(k_draw, logits, shape=(self.batch_size,))
        batch = {k: carry[k][idx] for k in BATCH_KEYS}
        fill = jnp.mean(carry["valid"].astype(jnp.float32))
        batch["buffer_fill"] = jnp.full((self.batch_size,), fill)
        batch["games"] = jnp.full((self.batch_size,), carry["games"].astype(jnp.float32))
        return batch, dict(carry, t=carry["t"] + 1)

    def loss(self, model: nnx.Module, batch: dict, rngs: nnx.Rngs) -> tuple[jax.Array, dict]:
        logits, value = model(batch["obs"], train=True)
        w = batch["valid"].astype(jnp.float32)
        denom = jnp.maximum(w.sum(), 1.0)
        ce = -jnp.sum(batch["policy"] * jax.nn.log_softmax(logits), -1)
        policy_loss = jnp.sum(w * ce) / denom
        value_loss = jnp.sum(w * (value - batch["result"]) ** 2) / denom
        acc = jnp.sum(w * (jnp.argmax(logits, -1) == jnp.argmax(batch["policy"], -1))) / denom
        metrics = {"policy_loss": policy_loss, "value_loss": value_loss, "policy_accuracy": acc}
        metrics |= {k: jnp.mean(batch[k]) for k in ("buffer_fill", "games")}
        return policy_loss + value_loss, metrics
