"""Federated learning simulated in one process: `fedavg` (client partitions, local SGD, the round as a
pseudo-gradient for the trainer's step); the task `fedavg` (jaxdl/tasks/fedavg.py) runs one round per step."""
