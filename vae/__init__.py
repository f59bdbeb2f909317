"""The face-quality VAE (Baert, Leroux & Simoens 2021): model, data, training, scoring."""
