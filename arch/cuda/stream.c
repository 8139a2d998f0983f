// SPDX-License-Identifier: MIT
/*
 * Streams and events: the driver's, with -errno returns and the driver's
 * error name in the message.
 */
#include <internal/cuda.h>
#include <internal/err.h>

#define ENTER_OR_RETURN(d) do {				\
	int __ret = asam_cuda_device_enter(d);		\
	if (__ret)					\
		return __ret;				\
} while (0)

int asam_cuda_stream_create(const struct asam_cuda_device *d, CUstream *s)
{
	ENTER_OR_RETURN(d);
	return asam_cuda_err(d->drv->cuStreamCreate(s, CU_STREAM_NON_BLOCKING),
			     "cuStreamCreate");
}

int asam_cuda_stream_destroy(const struct asam_cuda_device *d, CUstream s)
{
	ENTER_OR_RETURN(d);
	return asam_cuda_err(d->drv->cuStreamDestroy(s), "cuStreamDestroy");
}

int asam_cuda_stream_sync(const struct asam_cuda_device *d, CUstream s)
{
	ENTER_OR_RETURN(d);
	return asam_cuda_err(d->drv->cuStreamSynchronize(s),
			     "cuStreamSynchronize");
}

int asam_cuda_stream_capturing(const struct asam_cuda_device *d, CUstream s,
			       bool *capturing)
{
	CUstreamCaptureStatus st = CU_STREAM_CAPTURE_STATUS_NONE;
	int ret;

	ENTER_OR_RETURN(d);
	ret = asam_cuda_err(d->drv->cuStreamIsCapturing(s, &st),
			    "cuStreamIsCapturing");
	*capturing = !ret && st != CU_STREAM_CAPTURE_STATUS_NONE;
	return ret;
}

int asam_cuda_event_create(const struct asam_cuda_device *d, CUevent *e,
			   bool timing)
{
	ENTER_OR_RETURN(d);
	return asam_cuda_err(d->drv->cuEventCreate(e, timing ? CU_EVENT_DEFAULT :
						   CU_EVENT_DISABLE_TIMING),
			     "cuEventCreate");
}

int asam_cuda_event_record(const struct asam_cuda_device *d, CUevent e,
			   CUstream s)
{
	ENTER_OR_RETURN(d);
	return asam_cuda_err(d->drv->cuEventRecord(e, s), "cuEventRecord");
}

int asam_cuda_event_sync(const struct asam_cuda_device *d, CUevent e)
{
	ENTER_OR_RETURN(d);
	return asam_cuda_err(d->drv->cuEventSynchronize(e),
			     "cuEventSynchronize");
}

int asam_cuda_event_elapsed(const struct asam_cuda_device *d, CUevent a,
			    CUevent b, float *ms)
{
	ENTER_OR_RETURN(d);
	return asam_cuda_err(d->drv->cuEventElapsedTime(ms, a, b),
			     "cuEventElapsedTime");
}

int asam_cuda_event_destroy(const struct asam_cuda_device *d, CUevent e)
{
	ENTER_OR_RETURN(d);
	return asam_cuda_err(d->drv->cuEventDestroy(e), "cuEventDestroy");
}
