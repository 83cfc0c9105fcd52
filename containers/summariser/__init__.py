"""The confidential summarisation workload: one party's documents in, only capped summaries out.

The default method is extractive (``extractive-centroid-minilm``): no abstractive model ships
offline, so sentences of the document itself are chosen with the shipped MiniLM sentence
embeddings. A provider-supplied seq2seq model folder can be used instead (``seq2seq``). Either
way the voted output policy is applied after generation, inside the clean room.
"""
