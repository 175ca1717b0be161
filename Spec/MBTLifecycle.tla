---------------------------- MODULE MBTLifecycle ----------------------------
(***************************************************************************)
(* The state graph that the model-based tests walk                         *)
(* (Tests/ConformanceTests): Lifecycle's own, at the constants of the      *)
(* MBTLifecycle*.cfg configurations (SPECIFICATION Spec).                  *)
(*                                                                         *)
(* The implementation, like the kernel, runs some steps inline, in the     *)
(* same call as the step that made them due: percpu_ref_put runs release  *)
(* when the count reaches zero.  The tests stop the thread before each     *)
(* such release, so that any step the spec allows may come first.  One    *)
(* place remains where the implementation cannot stop: the kernel's       *)
(* free_ioctx_users cancels the requests in flight, and they complete      *)
(* later; the Swift release completes each request it cancels at once,    *)
(* before it kills reqs.  So in a state where CancelDue holds, the only    *)
(* step the implementation takes is that Complete; the tests list every    *)
(* other edge out of such a state, and what only they lead to, as not     *)
(* takeable, with this reason.                                             *)
(***************************************************************************)
EXTENDS Lifecycle

(* users' release of c has run and cancelled a request still in flight.    *)
CancelDue(c) == Cancelled(c) /\ inFlight[c] > 0
=============================================================================
