---------------------------- MODULE MBTLifecycle ----------------------------
(***************************************************************************)
(* The state graph that the model-based tests walk                         *)
(* (Tests/ConformanceTests).                                               *)
(*                                                                         *)
(* The implementation, like the kernel, runs some steps inline, in the     *)
(* same call as the step that made them due: percpu_ref_put runs release  *)
(* at once when the count reaches zero, and free_ioctx_users cancels the   *)
(* requests in flight before it returns.  Lifecycle allows other steps in  *)
(* between; the implementation can never stop there.  MBTNext takes those  *)
(* inline steps first, whenever one is due, so that every state of this    *)
(* graph without a due inline step is one the implementation can rest in.  *)
(* Every MBTNext step is a Next step: the graph is a subgraph of the       *)
(* spec's, and a walk along it is a behaviour of Lifecycle.                *)
(***************************************************************************)
EXTENDS Lifecycle

ReleaseDue(c) ==
    \/ users[c].releases > 0 /\ "users" \notin releaseRan[c]
    \/ reqs[c].releases > 0 /\ "reqs" \notin releaseRan[c]

(* free_ioctx_users has cancelled c's requests: they complete inline.      *)
CancelDue(c) == Cancelled(c) /\ inFlight[c] > 0

InlineDue == \E c \in Contexts : ReleaseDue(c) \/ CancelDue(c)

InlineStep ==
    \E c \in Contexts :
        \/ UsersRelease(c)
        \/ ReqsRelease(c)
        \/ CancelDue(c) /\ Complete(c)

MBTNext == IF InlineDue THEN InlineStep ELSE Next

MBTSpec == Init /\ [][MBTNext]_vars
=============================================================================
