"""Run machinery: the artifact store and its storage, the root lease and lock, code lineage, the cluster, local servers, run logs. Never imports Prefect."""
